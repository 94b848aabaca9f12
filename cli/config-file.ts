/**
 * Which relay config a command reads: --config when given; else the development relay's own
 * (.mailfleet/relay.yaml, which `npm start` writes), said so; else an error that says what to pass.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DEV_CONFIG_FILE, devRoot } from '../relay/dev.js';
import { ErrorCodes, MailfleetError } from '../relay/errors.js';

export function relayConfigFile(given: string | undefined, command: string, note: (line: string) => void): string {
  if (given) return given;
  const dev = path.join(devRoot(), DEV_CONFIG_FILE);
  const shown = path.relative(process.cwd(), dev);
  if (fs.existsSync(dev)) {
    note(`${command}: reading ${shown} (the development relay's config, written by npm start); --config FILE reads another`);
    return dev;
  }
  throw new MailfleetError(
    ErrorCodes.CONFIG_REQUIRED,
    `${command} needs a relay config: no --config given, and there is no ${shown} here (the development relay writes it when it starts)`,
    `give --config FILE, the relay's config file (in a relay pod: kubectl exec POD -c relay -- node /app/dist/cli/main.js ${command.replace(/^mailfleet /, '')} --config /etc/mailfleet/config/relay.yaml), or run \`npm start\` in this directory first`,
  );
}
