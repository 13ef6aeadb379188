# shellcheck shell=bash
# scripts/lib/debootstrap.sh: what every image built from debootstrap needs, sourced by
# scripts/ensure-node-image and scripts/ensure-host-image.
#
#   fenrir_lock NAME                 serialise concurrent runs on ${TMPDIR:-/tmp}/fenrir-NAME.lock (fd 9)
#   fenrir_find_mirror SUITE         the Debian mirror for SUITE: FENRIR_DEBIAN_MIRROR, else this machine's
#                                    apt configuration (first enabled deb822 stanza whose Suites include
#                                    SUITE, else the first `deb` line of /etc/apt/sources.list)
#   fenrir_debootstrap_bin           debootstrap's path (installs Debian's package when missing)
#   fenrir_rootfs_remove DIR         unmount what debootstrap left mounted under DIR, then delete it
#
# The caller defines log() and die().

fenrir_lock() {
    local lock_file="${TMPDIR:-/tmp}/fenrir-$1.lock"
    exec 9>"${lock_file}"
    flock -w 1800 9 || die "timed out waiting for ${lock_file}"
}

# First URI of the first enabled deb822 "deb" stanza whose Suites include $1 exactly.
_fenrir_mirror_from_deb822() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$1" '
            function flush() {
                if (uris != "" && is_deb && has_suite && enabled) { print uris; found = 1; exit }
                uris = ""; is_deb = 0; has_suite = 0; enabled = 1
            }
            BEGIN { enabled = 1 }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                line = $0
                key = tolower(line); sub(/:.*/, "", key); gsub(/[ \t]/, "", key)
                val = line; sub(/^[^:]*:[ \t]*/, "", val)
                n = split(val, w, /[ \t]+/)
                if (key == "types")   { for (i = 1; i <= n; i++) if (w[i] == "deb") is_deb = 1 }
                if (key == "suites")  { for (i = 1; i <= n; i++) if (w[i] == suite) has_suite = 1 }
                if (key == "uris")    { uris = w[1] }
                if (key == "enabled") { if (tolower(w[1]) == "no") enabled = 0 }
            }
            END { if (!found) flush() }
        ' "$f" | head -n 1
    done | head -n 1
}

# URI of the first `deb` line in sources.list, preferring one for $1.
_fenrir_mirror_from_sources_list() {
    local f=/etc/apt/sources.list
    [ -f "$f" ] || return 0
    awk -v suite="$1" '
        /^[ \t]*deb[ \t]/ {
            line = $0
            sub(/^[ \t]*deb[ \t]+/, "", line)
            if (line ~ /^\[/) sub(/^\[[^]]*\][ \t]*/, "", line)   # [options]
            split(line, w, /[ \t]+/)
            if (first == "") first = w[1]
            if (w[2] == suite) { print w[1]; done = 1; exit }
        }
        END { if (!done && first != "") print first }
    ' "$f"
}

fenrir_find_mirror() {
    local m="${FENRIR_DEBIAN_MIRROR:-}"
    [ -n "$m" ] || m="$(_fenrir_mirror_from_deb822 "$1")"
    [ -n "$m" ] || m="$(_fenrir_mirror_from_sources_list "$1")"
    [ -n "$m" ] || die "no Debian mirror found in apt configuration; set FENRIR_DEBIAN_MIRROR"
    case "$m" in
        http://*|https://*|file:/*) ;;
        *) die "unsupported mirror URI '$m' (need http(s):// or file:/); set FENRIR_DEBIAN_MIRROR" ;;
    esac
    printf '%s\n' "${m%/}"
}

fenrir_debootstrap_bin() {
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
    if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
        log "installing debootstrap"
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2
    fi
    command -v debootstrap 2>/dev/null || echo /usr/sbin/debootstrap
}

fenrir_rootfs_remove() {
    local root="$1" mp
    [ -n "${root}" ] && [ -d "${root}" ] || return 0
    # debootstrap may leave proc/sys/dev mounts behind when it fails; unmount them (deepest first)
    # before deleting anything.
    awk -v root="${root}" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts \
        | sort -r | while read -r mp; do umount -l "$mp" 2>/dev/null || true; done
    rm -rf --one-file-system "${root}"
}
