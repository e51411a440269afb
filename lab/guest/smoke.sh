#!/bin/bash
# Smoke test of a built guest with plain QEMU (TCG, user networking, host
# forwards on 127.0.0.1 only, an empty 16 MiB qcow2 disk on virtio-blk):
# measures boot-to-ready, checks every endpoint and the disk load.
#
#   lab/guest/smoke.sh OUTDIR [SMP]
#
# Prints "boot_ms=N" and a final "N passed, M failed" line; exit 1 on failure.
set -uo pipefail
OUT=${1:?usage: smoke.sh OUTDIR [SMP]}
SMP=${2:-1}
CMDLINE="console=ttyS0 virtpool.ip=192.0.2.101/24 virtpool.name=smoke1 virtpool.seq=1 quiet acpi=noirq no_timer_check pti=on cryptomgr.notests"
LOG=$(mktemp /tmp/vpsmoke.XXXXXX.log)
DISK=$(mktemp /tmp/vpsmoke.XXXXXX.qcow2)
qemu-img create -q -f qcow2 "$DISK" 16M || { echo "FAIL qemu-img create"; exit 1; }
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
ko() { echo "FAIL $*"; fail=$((fail + 1)); }

# two free loopback ports
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		ss -Htln "sport = :$p" | grep -q . || { echo $p; return; }
	done
}
HP=$(free_port) TP=$(free_port)

t0=$(date +%s%N)
qemu-system-x86_64 -accel tcg,tb-size=64 -m 128 -smp "$SMP" -nodefaults -nographic \
	-serial "file:$LOG" -no-reboot -kernel "$OUT/vmlinux" -initrd "$OUT/initramfs.img" \
	-append "$CMDLINE" \
	-netdev "user,id=n0,net=192.0.2.0/24,host=192.0.2.2,dhcpstart=192.0.2.200,hostfwd=tcp:127.0.0.1:$HP-192.0.2.101:80,hostfwd=tcp:127.0.0.1:$TP-192.0.2.101:9000" \
	-device virtio-net-pci,netdev=n0,romfile= \
	-drive "file=$DISK,if=none,id=d0,format=qcow2" -device virtio-blk-pci,drive=d0 </dev/null >/dev/null 2>&1 &
QPID=$!
trap 'kill $QPID 2>/dev/null; wait $QPID 2>/dev/null; rm -f "$LOG" "$DISK"' EXIT
URL=http://127.0.0.1:$HP

# readiness (resolution ~0.1 s: user networking accepts before the guest does)
ready=
for _ in $(seq 300); do
	[ "$(curl -s -m 0.1 "$URL/health")" = ok ] && { ready=1; break; }
	kill -0 $QPID 2>/dev/null || break
done
if [ -z "$ready" ]; then
	ko "guest not ready after 30 s"; cat "$LOG"
	echo "$pass passed, $fail failed"; exit 1
fi
echo "boot_ms=$((($(date +%s%N) - t0) / 1000000))"
ok "/health"

# consecutive "1\n2\n...": prints the count, or "bad" on a gap / repeat
consecutive() { awk 'NF==0{next} $1!=NR{print "bad"; bad=1; exit} END{if(!bad) print NR}'; }

n=$(curl -s -m 2 "$URL/stream" | head -n -1 | consecutive)
[ "$n" != bad ] && [ "${n:-0}" -ge 150 ] && ok "/stream: $n consecutive lines in 2 s" || ko "/stream: $n"

n=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$TP; cat <&3" | head -n -1 | consecutive)
[ "$n" != bad ] && [ "${n:-0}" -ge 150 ] && ok "tcp :9000: $n consecutive lines in 2 s" || ko "tcp :9000: $n"

n=$(curl -s -m 5 "$URL/seq" | consecutive)
t=$(curl -s -m 2 "$URL/seq?tail=1")
[ "$n" != bad ] && [ "${n:-0}" -gt 50 ] && [ "${t:-0}" -ge "$n" ] && ok "/seq: 1..$n, tail=$t" || ko "/seq: n=$n tail=$t"

# load: guest CPU busy share from /proc/stat deltas over 2 s
busy() {
	local a b
	a=$(curl -s -m 2 "$URL/stat" | awk '/^stat:/{print $3+$4+$5, $3+$4+$5+$6+$7+$8+$9+$10}')
	sleep 2
	b=$(curl -s -m 2 "$URL/stat" | awk '/^stat:/{print $3+$4+$5, $3+$4+$5+$6+$7+$8+$9+$10}')
	echo "$a $b" | awk '{d=$4-$2; print (d>0 ? int(100*($3-$1)/d) : -1)}'
}
r=$(curl -s -m 2 "$URL/load?cpu=50&mem=16&rate=8")
case $r in "cpu=50 mem=16 rate=8"*) ok "/load applied: $r" ;; *) ko "/load: $r" ;; esac
sleep 0.5
b=$(busy)
[ "$b" -ge 30 ] && [ "$b" -le 90 ] && ok "cpu=50: guest busy ${b}%" || ko "cpu=50: guest busy ${b}%"
curl -s -m 2 "$URL/load?cpu=100&mem=0" >/dev/null
sleep 0.5
b=$(busy)
[ "$b" -ge 85 ] && ok "cpu=100: guest busy ${b}%" || ko "cpu=100: guest busy ${b}%"
curl -s -m 2 "$URL/load?cpu=0&mem=0&rate=0" >/dev/null
sleep 0.5
b=$(busy)
[ "$b" -le 15 ] && ok "cpu=0: guest busy ${b}%" || ko "cpu=0: guest busy ${b}%"
curl -s -m 2 "$URL/stat" | grep -q '^uptime: ' && ok "/stat has uptime" || ko "/stat"
c=$(curl -s -m 2 "$URL/clock")
case $c in "mono_ns="[0-9]*" lag_us="[0-9]*) ok "/clock: $c" ;; *) ko "/clock: $c" ;; esac
r=$(curl -s -m 2 "$URL/load?mem=8&rate=4&page=4096")
case $r in "cpu=0 mem=8 rate=4"*) ok "/load with page=4096: $r" ;; *) ko "/load page=4096: $r" ;; esac
curl -s -m 2 "$URL/load?mem=0&rate=0&page=8" >/dev/null

# disk load: bytes read and written over 2 s at 4 MiB/s each (/stat's "disk:" line)
disk() { curl -s -m 2 "$URL/stat" | awk '/^disk: \/dev\/vda /{for(i=3;i<=NF;i++){split($i,kv,"="); v[kv[1]]=kv[2]}; print v["read"]+0, v["written"]+0}'; }
r=$(curl -s -m 2 "$URL/load?disk_read=4&disk_write=4")
case $r in *"disk_read=4 disk_write=4"*) ok "/load disk applied: $r" ;; *) ko "/load disk: $r" ;; esac
sleep 0.5
a=$(disk)
sleep 2
b=$(disk)
curl -s -m 2 "$URL/load?disk_read=0&disk_write=0" >/dev/null
if [ -n "$a" ] && [ -n "$b" ]; then
	read -r rd wr < <(echo "$a $b" | awk '{printf "%d %d\n", ($3-$1)/2/1024, ($4-$2)/2/1024}')
	[ "$rd" -ge 3277 ] && [ "$rd" -le 4915 ] && ok "disk_read=4: $rd KiB/s" || ko "disk_read=4: $rd KiB/s"
	[ "$wr" -ge 3277 ] && [ "$wr" -le 4915 ] && ok "disk_write=4: $wr KiB/s" || ko "disk_write=4: $wr KiB/s"
else
	ko "/stat has no disk line: $(curl -s -m 2 "$URL/stat" | grep '^disk')"
fi

echo "qemu_rss_kb=$(ps -o rss= -p $QPID)"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
