// Adapter between protobuf-es messages and @improbable-eng/grpc-web, which
// expects google-protobuf style classes with serializeBinary() and a static
// deserializeBinary(). Only the bidirectional Join stream needs it: every
// other call goes through @connectrpc/connect-web (see api.ts).
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

/** A google-protobuf style class wrapping messages of one protobuf-es schema. */
export interface WrappedClass<Desc extends DescMessage> {
  new (msg?: MessageShape<Desc>): Wrapped<Desc>;
  deserializeBinary(bytes: Uint8Array): Wrapped<Desc>;
}

/** One wrapped message; msg is the protobuf-es message itself. */
export interface Wrapped<Desc extends DescMessage> {
  readonly msg: MessageShape<Desc>;
  serializeBinary(): Uint8Array;
  toObject(): object;
}

/** messageClass returns a class that improbable's client can encode and decode. */
export function messageClass<Desc extends DescMessage>(schema: Desc): WrappedClass<Desc> {
  class W implements Wrapped<Desc> {
    readonly msg: MessageShape<Desc>;
    constructor(msg?: MessageShape<Desc>) {
      this.msg = msg ?? create(schema);
    }
    serializeBinary(): Uint8Array {
      return toBinary(schema, this.msg);
    }
    toObject(): object {
      return this.msg;
    }
    static deserializeBinary(bytes: Uint8Array): W {
      return new W(fromBinary(schema, bytes));
    }
  }
  return W;
}
