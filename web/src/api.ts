// Unary and server-streaming calls: @connectrpc/connect over grpc-web, to the
// page's own origin. The token travels only in the authorization header.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatService } from "./gen/parley/v1/chat_service_pb";

/** The name this app gives itself in presence metas (parley-client header). */
export const CLIENT_NAME = "web";

/** Api is a ChatService client. */
export type Api = Client<typeof ChatService>;

/** newApi returns a client that authenticates with token() when it returns one. */
export function newApi(token: () => string | null): Api {
  const auth: Interceptor = (next) => (req) => {
    const t = token();
    if (t) req.header.set("authorization", `Bearer ${t}`);
    req.header.set("parley-client", CLIENT_NAME);
    return next(req);
  };
  const transport = createGrpcWebTransport({
    baseUrl: location.origin,
    useBinaryFormat: true,
    interceptors: [auth],
    defaultTimeoutMs: 15000,
  });
  return createClient(ChatService, transport);
}

/** codeOf returns the gRPC status code of an error from a call. */
export function codeOf(err: unknown): Code {
  return ConnectError.from(err).code;
}

/** messageOf returns the message a person can act on, without the code prefix. */
export function messageOf(err: unknown): string {
  const e = ConnectError.from(err);
  if (e.code === Code.Unavailable || e.code === Code.Unknown) {
    return e.rawMessage ? `cannot reach the server (${e.rawMessage})` : "cannot reach the server";
  }
  return e.rawMessage || Code[e.code];
}

export { Code };
