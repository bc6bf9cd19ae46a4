// Express 4, installed under the alias `express4` to run the contract suite on it too. Its API is the
// one @types/express (v5) describes for what the suite uses: express(), use(), text(), createServer(app).
declare module 'express4' {
  import express from 'express';
  export default express;
}
