// The dashboard's only way to Tally: the public GraphQL contract over HTTP, and
// graphql-transport-ws (graphql-ws) for subscriptions.
import { createClient } from "../vendor/graphql-ws/client.js";

const TOKEN_KEY = "tally.token";
const ENDPOINT = "/graphql";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(secret) {
  sessionStorage.setItem(TOKEN_KEY, secret);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class GraphQLFailure extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join(" "));
    this.code = errors[0]?.extensions?.code ?? null;
  }
}

export async function request(query, variables = {}) {
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/graphql-response+json, application/json",
      Authorization: `Bearer ${token()}`,
    },
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new GraphQLFailure([{ message: `Tally answered ${response.status}.` }]);
  }
  if (body.errors?.length) throw new GraphQLFailure(body.errors);
  return body.data;
}

// A fresh key for one purchase or send: the same key again would return the first result.
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const REVOKED = 4403;

// Subscribe to `query` until the returned function is called. The connection
// reconnects with graphql-ws's randomised exponential backoff; `onReconnect` runs after
// each reconnection, because events sent during the gap are lost.
export function live(query, { next, onReconnect, onState }) {
  const url = new URL(ENDPOINT, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const client = createClient({
    url: url.href,
    connectionParams: () => ({ authorization: `Bearer ${token()}` }),
    retryAttempts: Infinity,
    shouldRetry: (event) => event?.code !== REVOKED,
    on: {
      connected: (_socket, _payload, wasRetry) => {
        onState?.("live");
        if (wasRetry) onReconnect?.();
      },
      closed: () => onState?.("reconnecting"),
    },
  });
  const stop = client.subscribe(
    { query },
    {
      next: (result) => result.data && next(result.data),
      error: () => onState?.("offline"),
      complete: () => {},
    },
  );
  return () => {
    stop();
    client.dispose();
  };
}
