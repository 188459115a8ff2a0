/** `scrooge run`: the daemon in the foreground. */
import { Agent } from '../../agent/daemon.js';
import { createLogger } from '../../agent/logging.js';
import { STOP_BUDGET_MS } from '../../config/tunables.js';
import { ScroogeError, UsageError } from '../../errors.js';
import { loadConfig } from '../../system/config-file.js';
import { v8FullCollection } from '../../system/memory.js';
import { createRunner } from '../../system/runner.js';
import { type Command, parseCommandLine } from '../command.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export const run: Command = {
  name: 'run',
  summary: 'run the agent (foreground)',
  usage: `usage: scrooge run --config FILE [--log-level LEVEL] [--pretty]

Runs the agent in the foreground: discovery, tunnels, traffic control. Logs JSON lines to
stdout (--pretty for people). SIGTERM or SIGINT stops it cleanly (tunnels and rules removed
unless the config says to leave them).
  --config FILE      the agent's JSON config (see README "Configuration")
  --log-level LEVEL  trace, debug, info (default: the config's log.level), warn, error
  --pretty           human-readable logs
`,
  async run(args) {
    const { values } = parseCommandLine(args, { config: { type: 'string' }, 'log-level': { type: 'string' }, pretty: { type: 'boolean' } }, { max: 0 });
    if (!values.config) throw new UsageError('--config FILE is required');
    if (values['log-level'] && !LEVELS.includes(values['log-level'])) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}`);
    const config = loadConfig(values.config);
    if ((config.tunnels.enabled || config.traffic.enabled) && process.getuid?.() !== 0)
      throw new ScroogeError('ENOTROOT', 'scrooge run needs root (CAP_NET_ADMIN) to build tunnels and program the kernel',
        'run it as root, or set tunnels.enabled and traffic.enabled to false for discovery only');
    const logger = await createLogger({ level: values['log-level'] ?? config.log.level, pretty: !!values.pretty });
    const agent = new Agent({ run: createRunner({ logger, timeoutMs: config.commandTimeout }), logger, collectGarbage: v8FullCollection() }, config);

    let stopping = false;
    let stopped!: () => void;
    const done = new Promise<void>((resolve) => (stopped = resolve));
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping');
      // Stop within the budget whatever happens.
      setTimeout(() => process.exit(1), STOP_BUDGET_MS).unref();
      void agent.stop().then(stopped, (err) => {
        logger.error({ err }, 'stop failed');
        stopped();
      });
    };
    const signals = ['SIGTERM', 'SIGINT'] as const;
    for (const s of signals) process.on(s, onSignal);
    try {
      try {
        await agent.start();
      } catch (err) {
        await agent.stop().catch(() => {});
        logger.flush();
        throw err;
      }
      // From here on the process is the agent: a bug must leave a trace in the log.
      const crash = (kind: string) => (err: unknown) => {
        logger.fatal({ err }, `${kind}: the agent stops`);
        process.exit(70);
      };
      process.on('uncaughtException', crash('uncaught exception'));
      process.on('unhandledRejection', crash('unhandled rejection'));
      await done;
      logger.flush();
      return 0;
    } finally {
      for (const s of signals) process.off(s, onSignal);
    }
  },
};
