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
