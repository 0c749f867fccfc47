import * as fs from "node:fs";

/** What `--credentials` gives: the gateway's gRPC address and one API key. */
export interface LifelineCredentials {
  target: string;
  apiKey: string;
}

/**
 * Reads the apphost's credentials.json (`.lifeline/credentials.json`: `{"gateway_grpc": "http://…", "keys":
 * [{"name", "tenant", "role", "key"}, …]}`) and returns the gateway address and the key named `keyName`.
 */
export function loadCredentials(file: string, keyName: string): LifelineCredentials {
  const document = JSON.parse(fs.readFileSync(file, "utf8")) as {
    gateway_grpc?: string;
    keys?: { name?: string; key?: string }[];
  };
  const keys = document.keys ?? [];
  const key = keys.find((k) => k.name === keyName);
  if (!key?.key) {
    throw new Error(`no key named '${keyName}' in ${file} (it has: ${keys.map((k) => k.name ?? "?").join(", ") || "none"})`);
  }
  return { target: document.gateway_grpc ?? "", apiKey: key.key };
}

/** `http://host:port`, `https://host:port` or `host:port` → the grpc-js address and whether to use TLS. */
export function parseTarget(target: string): { address: string; tls: boolean } {
  const trimmed = target.trim();
  const match = /^(https?):\/\/([^/]+)\/?$/i.exec(trimmed);
  if (match) return { address: match[2], tls: match[1].toLowerCase() === "https" };
  if (/^[^/\s]+$/.test(trimmed)) return { address: trimmed, tls: false };
  throw new Error(`target '${target}' is not http://host:port, https://host:port or host:port`);
}
