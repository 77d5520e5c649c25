#!/usr/bin/env bash
# Instructions per operation for every benchmark in benches/codec.rs, counted by cachegrind: unlike wall-clock
# time, not disturbed by other work on a shared machine. Each body runs N1 and N2 times; the difference divided
# by N2 - N1 leaves out start-up and set-up. mqttbytes decoding consumes a BytesMut clone per iteration, whose
# cost is counted separately and subtracted. Needs valgrind (apt-get install valgrind).
#
# Usage, from the repository root: mqtt-codec/benches/count-instructions.sh   (prints a Markdown table)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
n1=${N1:-20000}
n2=${N2:-120000}
bin=$(cargo bench -p mqtt-codec --bench codec --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "bench binary not found" >&2; exit 1; }

ir() { # $1 = group/op/library, $2 = iterations
    CODEC_BENCH_COUNT="$1 $2" valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$bin" 2>&1 \
        | sed -n 's/.*I *refs: *//p' | tr -d ,
}
per_op() { echo $(( ($(ir "$1" "$n2") - $(ir "$1" "$n1")) / (n2 - n1) )); }

echo "| packet | operation | mqtt-codec (instructions) | mqttbytes (instructions) | mqttbytes / mqtt-codec |"
echo "| --- | --- | ---: | ---: | ---: |"
for g in publish-64B-v3.1.1 publish-1024B-v3.1.1 subscribe-3-filters-v3.1.1 \
    publish-64B-v5 publish-1024B-v5 subscribe-3-filters-v5; do
    clone=$(per_op "$g/clone/mqttbytes")
    for op in decode encode; do
        ours=$(per_op "$g/$op/mqtt-codec")
        theirs=$(per_op "$g/$op/mqttbytes")
        [ "$op" = decode ] && theirs=$((theirs - clone))
        ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", b / a }')
        echo "| $g | $op | $ours | $theirs | ${ratio}x |"
    done
done
