cat "$@"
