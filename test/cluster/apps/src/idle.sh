#!/bin/sh
# idle: keeps a tools container running for `kubectl exec … -- curl …`, and exits 0 at once on
# SIGTERM. As PID 1 a bare `sleep infinity` would ignore SIGTERM (no handler) and make graceful
# deletion wait for the kubelet's SIGKILL; `wait` returns on a trapped signal, sleep does not.
trap 'exit 0' TERM INT
while :; do
  sleep 3600 &
  wait $!
done
