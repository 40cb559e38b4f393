set -u -o pipefail
K=${K:-16}; CHARS=${CHARS:-2560000}; DEV=${DEV:-cuda}; LIM=${LIM:-200}
SEEDS=$(seq -s ' ' 0 $((K-1)))
mkdir -p "$OUT"
SECONDS=0
timeout $LIM python3 -m archsim train workloads/lstm2x64.yaml --device rpu_baseline --data .data/warpeace_input.txt \
  --population $SEEDS --torch-device $DEV --max-chars $CHARS --out /tmp/pop --force --no-progress --json > "$OUT/pop_train.json" 2> "$OUT/pop_train.stderr"
echo "rc=$? wall=${SECONDS} s" | tee "$OUT/pop_train.log"
(cd /tmp/pop && find . -name '*.json' -o -name '*.png' | grep -v checkpoint | tar -czf "$OUT/pop_results.tar.gz" -T -)
ls -la /tmp/pop | head; du -sh /tmp/pop
tail -c 1500 "$OUT/pop_train.json"; tail -5 "$OUT/pop_train.stderr"
