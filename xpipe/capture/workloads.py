"""Guest-side scripts: the snapshot agent and the workloads, as shipped into guest images.

Every guest runs ``/xpipe/run-<workload>`` as its first process (``init=`` for the
Debian guest, ``rdinit=`` for the busybox initramfs guest). It mounts what it needs,
starts the workload in the background and then serves snapshot requests on the
second serial port (/dev/ttyS1): for ``snap N SEEK`` it copies /proc/kpageflags to
the second virtual disk (/dev/vdb) at block SEEK (64 KiB blocks) with an fsync, and
answers ``done N UPTIME BYTES``. The host takes its pmemsave only after that answer,
so the flags and the memory dump describe the same moment to within a second.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Block size the agent uses for the kpageflags copy; slots on the flags disk are multiples of it.
KPF_BLOCK = 65536

#: Shell functions shared by all guests (POSIX sh: works under busybox sh and dash).
COMMON_SH = r"""
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp LANG=C.UTF-8
log() { echo "xpipe: $*" > /dev/ttyS0; }

mount_basics() {
    [ -e /proc/self ] || mount -t proc proc /proc
    [ -d /sys/kernel ] || mount -t sysfs sysfs /sys
    [ -e /dev/ttyS1 ] || mount -t devtmpfs devtmpfs /dev
    # Writes go to RAM: the root disk is read-only so its block hashes stay valid.
    mount -t tmpfs -o size=80% tmpfs /tmp
    mkdir -p /tmp/work
}

start_workload() {
    log "workload $1 starting at $(cut -d' ' -f1 /proc/uptime)"
    ( cd /tmp/work && "$@" ) > /dev/ttyS0 2>&1 &
}

# Serve snapshot requests from the host on ttyS1 until the host powers us off.
serve() {
    stty -F /dev/ttyS1 raw -echo 2>/dev/null || busybox stty -F /dev/ttyS1 raw -echo
    exec 3<>/dev/ttyS1
    echo "xpipe-ready $(cut -d' ' -f1 /proc/uptime)" >&3
    while read -r cmd n seek <&3; do
        case "$cmd" in
        snap)
            dd if=/proc/kpageflags of=/dev/vdb bs=65536 seek="$seek" conv=notrunc,fsync 2>/dev/null
            # busybox dd does not print a byte count; the length tells the host where the frames end.
            bytes=$(wc -c < /proc/kpageflags)
            echo "done $n $(cut -d' ' -f1 /proc/uptime) $bytes" >&3
            ;;
        ping) echo "pong" >&3 ;;
        *) echo "unknown $cmd" >&3 ;;
        esac
    done
    log "control channel closed"
    while :; do sleep 3600; done
}
"""

#: Workload bodies of the Debian guest: each runs until the host stops the guest.
DEBIAN_WORKLOADS: dict[str, str] = {
    # Python + SQLite: a growing table, indexed look-ups and aggregates.
    "sqlite": r"""
python3 - <<'PY'
import random, sqlite3, time
rng = random.Random(1)
db = sqlite3.connect("/tmp/work/bench.db")
db.execute("create table if not exists t (id integer primary key, k integer, v text)")
db.execute("create index if not exists tk on t(k)")
words = [f"w{i}" for i in range(5000)]
round_ = 0
while True:
    rows = [(rng.randrange(1_000_000), " ".join(rng.choices(words, k=12))) for _ in range(5000)]
    db.executemany("insert into t (k, v) values (?, ?)", rows)
    db.commit()
    for _ in range(200):
        lo = rng.randrange(1_000_000)
        db.execute("select count(*), sum(length(v)) from t where k between ? and ?",
                   (lo, lo + 5000)).fetchone()
    n = db.execute("select count(*) from t").fetchone()[0]
    round_ += 1
    if round_ % 5 == 0:
        print("sqlite rows", n, flush=True)
    if n > 400_000:
        db.execute("delete from t where id % 2 = 0"); db.commit(); db.execute("vacuum")
PY
""",
    # A web server under load: python http.server serving /usr, a client in the same guest.
    "web": r"""
# Nothing brings up loopback in this guest (no iproute2 in minbase): SIOCSIFFLAGS IFF_UP.
python3 -c '
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH14s", b"lo", 0, b""))[:18])[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", flags | 1, b""))
'
cd /usr && python3 -m http.server 8000 --bind 127.0.0.1 > /dev/null 2>&1 &
sleep 5
python3 - <<'PY'
import os, random, time, urllib.request
rng = random.Random(2)
files = []
for top in ("/usr/share", "/usr/lib/python3.11"):
    for d, _, fs in os.walk(top):
        files += [os.path.join(d, f)[len("/usr"):] for f in fs if os.path.isfile(os.path.join(d, f))]
files.sort()
n = nbytes = errors = 0
while True:
    path = rng.choice(files)
    try:
        with urllib.request.urlopen("http://127.0.0.1:8000" + path, timeout=10) as r:
            nbytes += len(r.read())
    except Exception as e:  # server not up yet, or an unreadable file: keep going
        errors += 1
        if errors % 200 == 1:
            print("web error", e, flush=True)
        time.sleep(0.05)
    n += 1
    if n % 500 == 0:
        print("web requests", n, "bytes", nbytes, flush=True)
PY
""",
    # A compressor (xz, then gzip) over real files of the image.
    "compress": r"""
i=0
while :; do
    for d in /usr/share/doc /usr/lib/python3.11 /usr/share/perl5 /usr/bin /usr/lib/x86_64-linux-gnu; do
        [ -d "$d" ] || continue
        tar cf - "$d" 2>/dev/null | xz -6 -T1 > /tmp/work/a.tar.xz
        tar cf - "$d" 2>/dev/null | gzip -6 > /tmp/work/a.tar.gz
        i=$((i + 1)); echo "compress round $i $d $(wc -c < /tmp/work/a.tar.xz)"
    done
done
""",
    # gcc compiling a real program from source shipped by a Debian package (libstb-dev).
    "compile": r"""
cat > prog.c <<'C'
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#define STB_TRUETYPE_IMPLEMENTATION
#include <stb/stb_truetype.h>
#define STB_SPRINTF_IMPLEMENTATION
#include <stb/stb_sprintf.h>
#define STB_DS_IMPLEMENTATION
#include <stb/stb_ds.h>
int main(int argc, char **argv) {
    int w, h, n; unsigned char *p = argc > 1 ? stbi_load(argv[1], &w, &h, &n, 0) : 0;
    char buf[64]; stbsp_snprintf(buf, sizeof buf, "%d", p ? w * h : 0);
    return p == 0;
}
C
i=0
while :; do
    for o in -O0 -O1 -O2 -Os; do
        gcc $o -g -o prog prog.c -lm && i=$((i + 1)) && echo "compile $i $o $(wc -c < prog)"
    done
done
""",
    # An idle guest: only the kernel and the agent.
    "idle": r"""
while :; do sleep 3600; done
""",
}

#: Workloads of the busybox initramfs guest. ``dup`` makes pages other guests also have
#: (copies of the shared disk's files in tmpfs) and some that are its own (random bytes).
BUSYBOX_WORKLOADS: dict[str, str] = {
    "dup": r"""
cp -r /mnt/data /tmp/work/copy 2>/dev/null || dd if=/dev/vda of=/tmp/work/copy bs=65536 count=256
dd if=/dev/urandom of=/tmp/work/own bs=65536 count=64 2>/dev/null
while :; do cat /mnt/data/* > /dev/null 2>&1; sleep 5; done
""",
    "idle": r"""
while :; do sleep 3600; done
""",
}


def debian_run_script(workload: str) -> str:
    """``/xpipe/run-<workload>`` of the Debian guest."""
    return f"#!/bin/sh\n. /xpipe/common.sh\nmount_basics\nstart_workload /xpipe/work-{workload}\nserve\n"


def busybox_run_script(workload: str, modules: list[str]) -> str:
    """``/xpipe/run-<workload>`` of the busybox initramfs guest (PID 1, nothing mounted yet)."""
    insmods = "\n".join(f"insmod /lib/modules/{m} || log 'insmod {m} failed'" for m in modules)
    return (
        "#!/bin/busybox sh\n"
        "/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /usr/bin /usr/sbin /sbin\n"
        "/bin/busybox --install -s\n"
        ". /xpipe/common.sh\nmount_basics\n"
        f"{insmods}\n"
        "mount -t ext4 -o ro /dev/vda /mnt || log 'mount of /dev/vda failed'\n"
        f"start_workload /bin/sh /xpipe/work-{workload}\nserve\n"
    )


# -- the server guest kind (xpipe.capture.servers) -----------------------------------------


@dataclass(frozen=True)
class ServerWorkload:
    """A server and its load generator, both Debian packages, in the same guest on loopback.

    ``units`` are the Debian service units started for it (``systemd.wants=`` on the kernel
    command line; every service is disabled in the image). ``ready`` is a shell test that
    succeeds once the server answers; ``prepare`` runs once after that; each ``round``
    drives the server for a while and prints one line of the load generator's result
    (its exit status says whether the server answered).
    """

    about: str
    units: tuple[str, ...]
    ready: str
    prepare: str
    round: str


SERVER_WORKLOADS: dict[str, ServerWorkload] = {
    "postgres": ServerWorkload(
        about="PostgreSQL under pgbench (TPC-B like, scale 5, 4 clients)",
        units=("postgresql.service",),
        ready="runuser -u postgres -- pg_isready -q",
        prepare="runuser -u postgres -- pgbench -i -q -s 5 postgres",
        round=r"""
out=$(runuser -u postgres -- pgbench -n -c 4 -j 1 -T 10 postgres 2>&1) || { echo "$out"; return 1; }
echo "$out" | grep -E '^(tps|number of transactions actually processed)' | tr '\n' ' '
""",
    ),
    "nginx": ServerWorkload(
        about="nginx serving the files of /usr/share/doc under wrk (random paths) and ab",
        units=("nginx.service",),
        ready="ab -q -n 1 http://127.0.0.1/ > /dev/null 2>&1",
        prepare=r"""
ln -sfn /usr/share/doc /var/www/html/doc
cd /usr/share && find doc -type f | sort | sed 's|^|/|' > /run/xpipe/paths
cat > /run/xpipe/random.lua <<'LUA'
local paths = {}
for line in io.lines("/run/xpipe/paths") do paths[#paths + 1] = line end
math.randomseed(1)
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
LUA
""",
        round=r"""
w=$(wrk -t1 -c8 -d15s -s /run/xpipe/random.lua http://127.0.0.1/ 2>&1) || { echo "$w"; return 1; }
a=$(ab -q -n 2000 -c 4 http://127.0.0.1/ 2>&1) || { echo "$a"; return 1; }
echo "wrk: $(echo "$w" | grep -E 'requests in|Requests/sec' | tr -s ' \n' ' ')"\
     "ab: $(echo "$a" | grep -E 'Requests per second|Failed requests' | tr -s ' \n' ' ')"
""",
    ),
    "redis": ServerWorkload(
        about="Redis under redis-benchmark (100k keys, 256-byte values, 10 clients)",
        units=("redis-server.service",),
        ready="redis-cli ping 2>/dev/null | grep -q PONG",
        prepare="",
        round=r"""
out=$(redis-benchmark -q -n 5000 -c 10 -r 100000 -d 256 -t set,get,lpush,lpop 2>&1) \
    || { echo "$out"; return 1; }
echo "$out" | tr '\r' '\n' | grep 'requests per second' | sed 's/, p50.*//' | tr '\n' ' '
""",
    ),
    "memcached": ServerWorkload(
        about="memcached under memaslap (libmemcached-tools; 90% get, 10% set)",
        units=("memcached.service",),
        ready="memcstat --servers=127.0.0.1 > /dev/null 2>&1",
        prepare="",
        round=r"""
slap=$(command -v memaslap || command -v memcaslap) || { echo "no memaslap"; return 1; }
out=$($slap -s 127.0.0.1:11211 -T 1 -c 16 -t 15s 2>&1) || { echo "$out"; return 1; }
echo "$out" | grep -E '^(Run time|TPS|Get|Set)' | tr -s ' \n' ' '
""",
    ),
    "mariadb": ServerWorkload(
        about="MariaDB under sysbench oltp_read_write (4 tables of 10000 rows, 4 threads)",
        units=("mariadb.service",),
        ready="mariadb-admin ping --silent > /dev/null 2>&1",
        prepare=r"""
mariadb -e 'create database if not exists sbtest'
sysbench oltp_read_write $SB_OPTS prepare > /dev/null
""",
        round=r"""
out=$(sysbench oltp_read_write $SB_OPTS --threads=4 --time=15 run 2>&1) || { echo "$out"; return 1; }
echo "$out" | grep -E '(transactions|queries):' | tr -s ' \n' ' '
""",
    ),
    "idle": ServerWorkload(
        about="an idle server: systemd, journald, udev, cron and the agent only",
        units=(),
        ready="true",
        prepare="",
        round="sleep 60; echo idle",
    ),
}

#: Environment of every workload script of the server guest.
_SERVER_ENV = r"""
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root
SB_OPTS="--db-driver=mysql --mysql-socket=/run/mysqld/mysqld.sock --mysql-user=root --tables=4 --table-size=10000"
W=$(sed -n 's/.*xpipe\.workload=\([^ ]*\).*/\1/p' /proc/cmdline)
uptime_s() { cut -d' ' -f1 /proc/uptime; }
"""


def server_workload_script(name: str) -> str:
    """``/xpipe/workloads/<name>``: the shell functions ready, prepare and round of one workload."""
    w = SERVER_WORKLOADS[name]
    return (
        f"# {w.about}\n"
        f"ready() {{\n{w.ready.strip()}\n}}\n"
        f"prepare() {{\n{w.prepare.strip() or 'true'}\n}}\n"
        f"round() {{\n{w.round.strip()}\n}}\n"
    )


#: ``/xpipe/server``: ``server ready`` waits until the workload's server answers (unit
#: xpipe-ready); ``server load`` runs its load generator in rounds (unit xpipe-load).
SERVER_SH = (
    "#!/bin/sh\n" + _SERVER_ENV + r"""
[ -n "$W" ] || { echo "xpipe: no xpipe.workload= on the kernel command line"; exit 1; }
. "/xpipe/workloads/$W"
mkdir -p /run/xpipe
case "$1" in
ready)
    until ready; do sleep 1; done
    echo "xpipe-server $W ready at $(uptime_s)"
    ;;
load)
    cd /run/xpipe
    prepare || echo "xpipe-load $W prepare failed"
    echo "xpipe-load $W prepared at $(uptime_s)"
    i=0
    while :; do
        i=$((i + 1))
        if out=$(round 2>&1); then
            echo "xpipe-load $W round $i ok at $(uptime_s): $out"
        else
            echo "xpipe-load $W round $i failed at $(uptime_s): $(echo "$out" | tail -n 3 | tr '\n' ' ')"
            sleep 5
        fi
    done
    ;;
*) echo "usage: server ready|load"; exit 2 ;;
esac
"""
)

#: ``/xpipe/agent`` (unit xpipe-agent, after xpipe-ready): says who booted, then serves the
#: host's snapshot requests exactly as the other guest kinds do (COMMON_SH's serve).
SERVER_AGENT_SH = (
    "#!/bin/sh\n" + _SERVER_ENV + ". /xpipe/common.sh\n" + r"""
. /etc/os-release
log "agent pid1=$(cat /proc/1/comm) kernel=$(uname -r) os=$ID-$VERSION_CODENAME workload=$W ready=$(uptime_s)"
serve
"""
)

#: ``/xpipe/overlay-init``, the kernel's ``init=``: the root disk stays read-only (so the image's
#: block hashes are what the guest reads); writes go to a tmpfs overlaid on it; then systemd
#: becomes PID 1 (exec keeps the PID).
SERVER_OVERLAY_INIT = r"""#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
fail() { echo "xpipe overlay-init: $*; starting systemd on the read-only root" > /dev/console; exec /sbin/init; }
modprobe overlay || fail "modprobe overlay failed"
mount -t tmpfs -o mode=0755 xpipe-rw /xpipe/rw || fail "tmpfs"
mkdir -p /xpipe/rw/upper /xpipe/rw/work /xpipe/rw/root
mount -t overlay -o lowerdir=/,upperdir=/xpipe/rw/upper,workdir=/xpipe/rw/work overlay /xpipe/rw/root \
    || fail "overlay mount failed"
for m in /dev /proc /sys /run; do
    mountpoint -q "$m" && mount --move "$m" "/xpipe/rw/root$m"
done
cd /xpipe/rw/root
pivot_root . xpipe/lower || fail "pivot_root failed"
exec /sbin/init
"""

#: Systemd units of the server guest, by file name under /etc/systemd/system.
SERVER_UNITS: dict[str, str] = {
    "xpipe-ready.service": """[Unit]
Description=xpipe: wait until the workload's server answers

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/xpipe/server ready
TimeoutStartSec=infinity
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
""",
    "xpipe-load.service": """[Unit]
Description=xpipe: the workload's load generator
Requires=xpipe-ready.service
After=xpipe-ready.service

[Service]
ExecStart=/xpipe/server load
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
""",
    "xpipe-agent.service": """[Unit]
Description=xpipe: snapshot agent (kpageflags to the second disk on the host's request)
Wants=xpipe-ready.service
After=xpipe-ready.service

[Service]
ExecStart=/xpipe/agent
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
""",
}
