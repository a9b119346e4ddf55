#!/bin/sh
# Entrypoint of the tdro-suite image: make the volumes writable for the app user, then run the command
# (`tdro-suite serve ...`) as that user, never as root.
#
# Started as root (docker run and compose by default): a bind mount the engine created for a missing host
# folder (./models, ./indexes) is owned by root, so the app user could not write an index or a model
# cache there. Everything under TDRO_WRITABLE_DIRS that is not already the app user's is given to
# TDRO_APP_UID:TDRO_APP_GID (on the host too, for a bind mount), then setpriv drops to that user and
# execs the command, which becomes PID 1 and receives docker stop's SIGTERM itself.
# Started as another user (--user, Kubernetes runAsUser): nothing is changed; a folder that user cannot
# write is reported (give it to the user, e.g. fsGroup), and the command runs anyway, since a read-only
# model folder or a read-only index (--workers > 1) is legitimate.
set -eu

uid="${TDRO_APP_UID:-1000}"
gid="${TDRO_APP_GID:-1000}"
dirs="${TDRO_WRITABLE_DIRS:-/models /indexes}"

if [ "$(id -u)" = 0 ]; then
    for dir in $dirs; do
        mkdir -p "$dir" 2>/dev/null || true
        # only what is not the app user's yet: a fresh mount is one folder, a reused one costs one stat per file
        if ! find "$dir" \( ! -user "$uid" -o ! -group "$gid" \) -exec chown -h "$uid:$gid" {} + 2>/dev/null; then
            echo "tdro-entrypoint: could not give $dir to uid $uid (read-only mount?); leaving it as it is" >&2
        fi
    done
    # getpass.getuser() (torch's compile caches) needs a name, also for a uid without a passwd entry
    export USER=tdro LOGNAME=tdro
    exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
fi

for dir in $dirs; do
    if [ -d "$dir" ] && [ ! -w "$dir" ]; then
        echo "tdro-entrypoint: $dir is not writable by uid $(id -u); index writes and model caching there" \
             "will fail. Give it to this user (chown, or fsGroup), or start the container as root and this" \
             "entrypoint gives it to uid $uid." >&2
    fi
done
exec "$@"
