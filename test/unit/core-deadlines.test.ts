// Every scenario of core.test.ts again, with each core ticked only at its own nextDeadline (as
// the agent does since it stopped ticking every 100 ms): the same assertions must hold, so no
// deadline the core's timers depend on is missing from nextDeadline.
import { tickAtDeadlinesByDefault } from './meshsim.js';

tickAtDeadlinesByDefault.on = true;
await import('./core.test.js');
await import('./hardening.test.js');
