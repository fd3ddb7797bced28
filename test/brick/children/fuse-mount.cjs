// Child process of the brick tests (not a test itself): mounts an empty FUSE filesystem at
// argv[2] and prints "mounted". The test SIGKILLs it, which leaves the mount behind in the
// ENOTCONN state, as a crashed agent would.
const Fuse = require('fuse-native');

const stat = { mtime: new Date(), atime: new Date(), ctime: new Date(), nlink: 1, size: 0, mode: 0o40755, uid: 0, gid: 0 };
const fuse = new Fuse(process.argv[2], {
  readdir: (_path, cb) => cb(0, []),
  getattr: (path, cb) => (path === '/' ? cb(0, stat) : cb(Fuse.ENOENT)),
});
fuse.mount((err) => {
  if (err) {
    console.error(err.message);
    process.exit(1);
  }
  console.log('mounted');
});
