#!/bin/bash
# Live-migration check of the guest with plain QEMU (no libvirt), all inside a
# private network namespace (vpg-mig-$$: bridge + two taps, nothing leaves it).
# Boots the guest, opens /stream and a :9000 stream, migrates it N times
# between two QEMU processes (TCG), then checks that both streams and /seq
# have no gap and no repeat. Run as root.
#
#   lab/guest/migtest.sh OUTDIR [MIGRATIONS] [LOAD]   e.g. LOAD='cpu=50&mem=16&rate=8'
#
# Ends with a "N passed, M failed" line.
set -uo pipefail
OUT=${1:?usage: migtest.sh OUTDIR [MIGRATIONS] [LOAD]}
NMIG=${2:-2}
LOAD=${3:-cpu=0&mem=0}
NS=vpg-mig-$$
W=$(mktemp -d /tmp/vpmig.XXXXXX)
IP=192.0.2.101
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
ko() { echo "FAIL $*"; fail=$((fail + 1)); }
nsx() { ip netns exec "$NS" "$@"; }

cleanup() {
	for f in "$W"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
	sleep 0.2
	ip netns del "$NS" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

ip netns add "$NS"
nsx ip link set lo up
nsx ip link add br0 type bridge
nsx ip addr add 192.0.2.1/24 dev br0
nsx ip link set br0 up
for t in 0 1; do
	nsx ip tuntap add vpgtap$t mode tap
	nsx ip link set vpgtap$t master br0 up
done

# qemu SIDE TAP [extra args]: one QEMU; monitor socket $W/SIDE.mon
qemu() {
	local side=$1 tap=$2
	shift 2
	# (ip netns exec execs qemu, so $! is qemu's pid)
	ip netns exec "$NS" qemu-system-x86_64 -accel tcg,tb-size=64 -m 128 -smp 1 -nodefaults -nographic \
		-serial "file:$W/$side.log" -no-reboot -kernel "$OUT/vmlinux" -initrd "$OUT/initramfs.img" \
		-append "console=ttyS0 virtpool.ip=$IP/24 virtpool.name=mig1 virtpool.seq=1 quiet acpi=noirq no_timer_check mitigations=off cryptomgr.notests" \
		-netdev tap,id=n0,ifname=$tap,script=no,downscript=no \
		-device virtio-net-pci,netdev=n0,mac=52:54:00:00:01:01,romfile= \
		-monitor "unix:$W/$side.mon,server,nowait" "$@" </dev/null >>"$W/qemu.err" 2>&1 &
	echo $! >"$W/$side.pid"
}
mon() { echo "$2" | nsx socat - "UNIX-CONNECT:$W/$1.mon" 2>/dev/null | tr -d '\r'; }

qemu a vpgtap0
for _ in $(seq 300); do
	[ "$(nsx curl -s -m 0.2 "http://$IP/health")" = ok ] && break
	sleep 0.1
done
[ "$(nsx curl -s -m 1 "http://$IP/health")" = ok ] && ok "guest up" || { ko "guest not up"; cat "$W"/*.log; echo "$pass passed, $fail failed"; exit 1; }
nsx curl -s -m 2 "http://$IP/load?$LOAD" >/dev/null
ip netns exec "$NS" curl -sN "http://$IP/stream" >"$W/stream.txt" &
echo $! >"$W/curl.pid"
ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$IP/9000; exec cat <&3" >"$W/tcp.txt" &
echo $! >"$W/tcp.pid"
sleep 2

src=a srctap=vpgtap0 port=4444
for i in $(seq "$NMIG"); do
	if [ $src = a ]; then dst=b dsttap=vpgtap1; else dst=a dsttap=vpgtap0; fi
	port=$((port + 1))
	qemu $dst $dsttap -incoming "tcp:127.0.0.1:$port"
	sleep 1
	before=$(wc -l <"$W/stream.txt")
	t0=$(date +%s%N)
	mon $src "migrate -d tcp:127.0.0.1:$port" >/dev/null
	st=
	for _ in $(seq 600); do
		st=$(mon $src "info migrate" | awk -F': ' '/^Migration status/{print $2}')
		[ -n "$st" ] || st=nostatus
		case $st in completed | failed | cancelled) break ;; esac
		sleep 0.1
	done
	info=$(mon $src "info migrate")
	took=$((($(date +%s%N) - t0) / 1000000))
	down=$(echo "$info" | awk -F': ' '/^downtime:/{print $2; exit}')
	if [ "$st" = completed ]; then ok "migration $i $src->$dst: ${took} ms total, downtime ${down}"; else
		ko "migration $i: status $st"; echo "$info"; cat "$W/qemu.err"; fi
	kill "$(cat "$W/$src.pid")" 2>/dev/null
	rm -f "$W/$src.pid"
	sleep 2
	after=$(wc -l <"$W/stream.txt")
	[ "$after" -gt "$before" ] && ok "stream flows after migration $i ($before -> $after lines)" || ko "stream stalled after migration $i"
	src=$dst
done

nsx curl -s -m 2 "http://$IP/load?cpu=0&mem=0" >/dev/null
sleep 1
kill "$(cat "$W/curl.pid")" "$(cat "$W/tcp.pid")" 2>/dev/null
sleep 0.3
consecutive() { head -n -1 | awk 'NF==0{next} $1!=NR{print "bad at line " NR ": " $1; bad=1; exit} END{if(!bad) print NR}'; }
n=$(consecutive <"$W/stream.txt")
case $n in bad*) ko "/stream: $n" ;; *) ok "/stream: $n consecutive lines across $NMIG migrations" ;; esac
n=$(consecutive <"$W/tcp.txt")
case $n in bad*) ko "tcp :9000: $n" ;; *) ok "tcp :9000: $n consecutive lines across $NMIG migrations" ;; esac
n=$(nsx curl -s -m 5 "http://$IP/seq" | awk 'NF==0{next} $1!=NR{print "bad at line " NR; bad=1; exit} END{if(!bad) print NR}')
case $n in bad*) ko "/seq: $n" ;; *) ok "/seq: 1..$n, no gap/repeat" ;; esac
echo "$pass passed, $fail failed"
[ $fail = 0 ]
