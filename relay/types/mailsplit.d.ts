// mailsplit 5.4 has no typings. The streams relay/links/rewrite.ts uses: the Splitter turns a
// message into objects (a node's headers, body chunks, boundaries), the Joiner turns them back.
declare module 'mailsplit' {
  import { Transform } from 'node:stream';
  export class Splitter extends Transform {
    constructor(options?: { ignoreEmbedded?: boolean; maxHeadSize?: number });
  }
  export class Joiner extends Transform {
    constructor();
  }
}
