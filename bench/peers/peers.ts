// The other storage systems `npm run bench -- --peer NAME` can measure beside brickd: the
// names run.ts accepts, each with what it adds. Cases that have a use for a peer read
// ctx.peers; the others ignore it.
export const PEERS: Readonly<Record<string, string>> = {
  gluster: 'GlusterFS replica 3 through its own FUSE client, beside brickd\'s mount (case fuse); installed with apt-get when missing',
};
