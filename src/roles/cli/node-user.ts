// Node-side building blocks shared by `mcp node provision` and `mcp agent upgrade` (issue 16): what
// lands in /srv/mcp is written by the agent's own user, never by root, and root only ever opens an
// upload that sits in the SSH login user's own home. Fixed sh programs; every variable part is a
// positional argument ("$1"…), never text spliced into the program.

/** argv prefix: root becomes the agent's user (uid, gid, its groups) before running the rest. */
export function asAgentUser(user: string | number): string[] {
  return ["setpriv", `--reuid=${user}`, `--regid=${user}`, "--init-groups", "--"];
}

/** Root wrapper: opens $1 (an upload in the login user's home) as stdin of the rest, run as the agent's user. */
export const FROM_UPLOAD = 'f=$1; shift; exec "$@" < "$f"';

/**
 * As the login user: refuses to stage an upload in $1 unless it is a real directory of the login
 * user that nobody else may write (the upload there is what root opens for the agent's user).
 */
export const CHECK_STAGE =
  'd=$1; [ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] || { echo "cannot stage the upload in $d: not a directory of the login user" >&2; exit 3; }; ' +
  'if [ -n "$(find "$d" -maxdepth 0 -perm /022)" ]; then echo "cannot stage the upload in $d: other users may write there" >&2; exit 3; fi';
