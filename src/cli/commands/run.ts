/** `scrooge run`: the daemon in the foreground. */
import { Agent } from '../../agent/daemon.js';
import { createLogger } from '../../agent/logging.js';
import { UsageError } from '../../errors.js';
import { loadConfig } from '../../system/config-file.js';
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
  async run(args, io) {
    const { values } = parseCommandLine(args, { config: { type: 'string' }, 'log-level': { type: 'string' }, pretty: { type: 'boolean' } }, { max: 0 });
    if (!values.config) throw new UsageError('--config FILE is required');
    if (values['log-level'] && !LEVELS.includes(values['log-level'])) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}`);
    const config = loadConfig(values.config);
    const logger = await createLogger({ level: values['log-level'] ?? config.log.level, pretty: !!values.pretty });
    const agent = new Agent(config, { run: createRunner({ logger }), logger });
    const stopped = new Promise<void>((resolve) => {
      let stopping = false;
      const onSignal = (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'stopping');
        // Stop within 2 s whatever happens.
        setTimeout(() => process.exit(1), 2000).unref();
        void agent.stop().then(resolve, (err) => {
          logger.error({ err }, 'stop failed');
          resolve();
        });
      };
      process.on('SIGTERM', () => onSignal('SIGTERM'));
      process.on('SIGINT', () => onSignal('SIGINT'));
    });
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
    await stopped;
    logger.flush();
    void io;
    return 0;
  },
};
