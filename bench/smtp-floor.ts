/**
 * The least a Node SMTP server can cost on the bench's load: it answers each command of a plain
 * session (EHLO, MAIL, RCPT, DATA up to the final dot, QUIT) with a fixed reply, parses
 * nothing, keeps nothing, enforces nothing. Not a server anyone should run: `npm run
 * bench:engines` sets it beside smtp-server alone, to say how much of smtp-server's CPU per
 * message an SMTP engine of our own could take away at most. Usage: node smtp-floor.js PORT
 */
import net from 'node:net';

const port = Number(process.argv[2]);
const EHLO = '250-floor.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 26214400\r\n';
const END_OF_DATA = '\r\n.\r\n';

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let pending = '';
  let inData = false;
  socket.write('220 floor.bench.test ESMTP\r\n');
  socket.on('data', (chunk: Buffer) => {
    pending += chunk.toString('latin1');
    for (;;) {
      if (inData) {
        const end = pending.indexOf(END_OF_DATA);
        if (end < 0) {
          pending = pending.slice(-END_OF_DATA.length);
          return;
        }
        pending = pending.slice(end + END_OF_DATA.length);
        inData = false;
        socket.write('250 2.0.0 Ok: queued\r\n');
        continue;
      }
      const eol = pending.indexOf('\r\n');
      if (eol < 0) return;
      const verb = pending.slice(0, 4).toUpperCase();
      pending = pending.slice(eol + 2);
      if (verb === 'EHLO') socket.write(EHLO);
      else if (verb === 'DATA') {
        socket.write('354 End data with <CR><LF>.<CR><LF>\r\n');
        inData = true;
        // The final dot may follow at once: the CRLF before it was the DATA line's.
        pending = '\r\n' + pending;
      } else if (verb === 'QUIT') {
        socket.write('221 2.0.0 Bye\r\n');
        socket.destroy();
        return;
      } else socket.write('250 2.0.0 Ok\r\n');
    }
  });
  socket.on('error', () => undefined);
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
