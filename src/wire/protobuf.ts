// protobufjs runtime settings for every generated module in src/wire: 64-bit integers
// decode as plain JS numbers instead of Long objects. brickd's 64-bit fields (sizes, byte
// counts, seqs) stay far below 2^53, and plain numbers keep the rest of the code simple.
// Import this module before any generated code.
import protobuf from 'protobufjs/minimal.js';

protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
protobuf.configure();

export { protobuf };
