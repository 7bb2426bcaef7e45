// Types for the part of ssh2 (a CommonJS package without bundled types) that src/ssh uses.
// Kept here instead of adding @types/ssh2 to package.json; widen it when a caller needs more.
declare module "ssh2" {
  import type { EventEmitter } from "node:events";
  import type { Readable, Writable } from "node:stream";

  export interface ParsedKey {
    type: string;
    comment: string;
    isPrivateKey(): boolean;
    getPublicSSH(): Buffer;
  }

  export type AuthMethod =
    | { type: "agent"; username: string; agent: string }
    | { type: "publickey"; username: string; key: ParsedKey };

  export interface ConnectConfig {
    host: string;
    port: number;
    username: string;
    agent?: string;
    authHandler?: AuthMethod[];
    hostVerifier?: (key: Buffer, verify: (ok: boolean) => void) => boolean | undefined;
    readyTimeout?: number;
    keepaliveInterval?: number;
    keepaliveCountMax?: number;
    algorithms?: { serverHostKey?: string[] | { prepend?: string[]; remove?: string[] } };
    debug?: (msg: string) => void;
  }

  export interface ClientChannel extends Readable {
    stderr: Readable;
    stdin: Writable;
    signal(name: string): void;
    close(): void;
    end(data?: Buffer | string): void;
  }

  export interface Stats {
    mode: number;
    uid: number;
    gid: number;
    size: number;
    atime: number;
    mtime: number;
    isDirectory(): boolean;
    isFile(): boolean;
    isSymbolicLink(): boolean;
  }

  type Cb = (err: (Error & { code?: number }) | undefined | null) => void;

  export interface SFTPWrapper extends EventEmitter {
    open(
      path: string,
      flags: string,
      attrs: { mode?: number },
      cb: (err: Error | undefined, handle: Buffer) => void,
    ): void;
    write(handle: Buffer, buf: Buffer, off: number, len: number, pos: number, cb: Cb): void;
    fchmod(handle: Buffer, mode: number, cb: Cb): void;
    close(handle: Buffer, cb: Cb): void;
    rename(from: string, to: string, cb: Cb): void;
    ext_openssh_rename(from: string, to: string, cb: Cb): void;
    chmod(path: string, mode: number, cb: Cb): void;
    unlink(path: string, cb: Cb): void;
    stat(path: string, cb: (err: (Error & { code?: number }) | undefined, st: Stats) => void): void;
    realpath(path: string, cb: (err: Error | undefined, abs: string) => void): void;
    end(): void;
  }

  export class Client extends EventEmitter {
    connect(cfg: ConnectConfig): this;
    exec(cmd: string, cb: (err: Error | undefined, ch: ClientChannel) => void): boolean;
    sftp(cb: (err: Error | undefined, sftp: SFTPWrapper) => void): boolean;
    end(): this;
    destroy(): this;
    setNoDelay(noDelay: boolean): this;
  }

  export const utils: {
    parseKey(data: Buffer | string, passphrase?: string): ParsedKey | ParsedKey[] | Error;
    generateKeyPairSync(
      type: "ed25519" | "rsa" | "ecdsa",
      opts?: Record<string, unknown>,
    ): { private: string; public: string };
  };
}
