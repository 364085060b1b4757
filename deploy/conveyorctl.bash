# bash completion for conveyorctl (made by `conveyorctl completion bash`)
_conveyorctl()
{
    local cur prev cmd sub i
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd= sub=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        -c|--config|--dsn|--redis) ((i++)) ;;
        -*) ;;
        *) if [ -z "$cmd" ]; then cmd=${COMP_WORDS[i]}; elif [ -z "$sub" ]; then sub=${COMP_WORDS[i]}; fi ;;
        esac
    done
    local types="noop activation order-fetch carrier-post tracking-event tracking-poll tracking-push ml-notification"
    local states="PENDING_POST POSTED AWAITING_TRACKING TRACKED MIRAKL_OK COMPLETE FAILED_POST FAILED_TRACKING FAILED_PUSH"
    case $prev in
    -c|--config|--file|-f|--dir) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --type) COMPREPLY=($(compgen -W "$types" -- "$cur")); return ;;
    --state) COMPREPLY=($(compgen -W "$states" -- "$cur")); return ;;
    --scopes) COMPREPLY=($(compgen -W "$types activation operator orders '*'" -- "$cur")); return ;;
    --dsn|--redis|--since|--limit|--count|--batch|--min-age-s|--order|--delay-ms|--run-at|--max-attempts|--job-id|--idempotency-key) return ;;
    esac
    local words
    case $cmd in
    '') words="migrate seed submit status dead retry purge queues workers watch held orders order ops keys trace hash-key completion --config --dsn --redis --json --help" ;;
    migrate) words="up status --dir" ;;
    submit) if [ -z "$sub" ]; then words="$types --file"; else words="--delay-ms --run-at --max-attempts --job-id --idempotency-key --batch"; fi ;;
    dead) case $sub in
        ''|list) words="list show retry purge --type --since --limit" ;;
        retry) words="--all --type --since --limit" ;;
        purge) words="--yes" ;;
        esac ;;
    purge) words="--yes" ;;
    watch) words="--count" ;;
    held) words="--min-age-s" ;;
    orders) words="--state --list --limit" ;;
    ops) if [ -z "$sub" ]; then words=tail; else words="--order --limit --follow"; fi ;;
    keys) case $sub in
        '') words="add revoke list" ;;
        add) words="--scopes --print-only" ;;
        revoke) words="--force" ;;
        esac ;;
    trace) if [ -z "$sub" ]; then words="status set reset"; elif [ "$sub" = set ]; then words="api worker broker ups db all off"; fi ;;
    completion) words=bash ;;
    esac
    COMPREPLY=($(compgen -W "$words --json" -- "$cur"))
}
complete -F _conveyorctl conveyorctl
