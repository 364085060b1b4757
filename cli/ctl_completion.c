/* ctl_completion.c - conveyorctl completion bash: a bash completion script.
 *
 * Install: `conveyorctl completion bash > /etc/bash_completion.d/conveyorctl`
 * (the image ships it as /usr/share/bash-completion/completions/conveyorctl;
 * deploy/conveyorctl.bash is the same text, kept equal by tests/integ/test_ctl.c).
 * Job types come from the job-type table, so a new type completes without an
 * edit here. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "jobtype.h"
#include "ostate.h"

static const char script_head[] =
    "# bash completion for conveyorctl (made by `conveyorctl completion bash`)\n"
    "_conveyorctl()\n"
    "{\n"
    "    local cur prev cmd sub i\n"
    "    COMPREPLY=()\n"
    "    cur=${COMP_WORDS[COMP_CWORD]}\n"
    "    prev=${COMP_WORDS[COMP_CWORD-1]}\n"
    "    cmd= sub=\n"
    "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
    "        case ${COMP_WORDS[i]} in\n"
    "        -c|--config|--dsn|--redis) ((i++)) ;;\n"
    "        -*) ;;\n"
    "        *) if [ -z \"$cmd\" ]; then cmd=${COMP_WORDS[i]};"
    " elif [ -z \"$sub\" ]; then sub=${COMP_WORDS[i]}; fi ;;\n"
    "        esac\n"
    "    done\n";

static const char script_body[] =
    "    case $prev in\n"
    "    -c|--config|--file|-f|--dir) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
    "    --type) COMPREPLY=($(compgen -W \"$types\" -- \"$cur\")); return ;;\n"
    "    --state) COMPREPLY=($(compgen -W \"$states\" -- \"$cur\")); return ;;\n"
    "    --scopes) COMPREPLY=($(compgen -W \"$types activation operator orders '*'\" --"
    " \"$cur\")); return ;;\n"
    "    --dsn|--redis|--since|--limit|--count|--batch|--min-age-s|--order|--delay-ms|--run-at"
    "|--max-attempts|--job-id|--idempotency-key) return ;;\n"
    "    esac\n"
    "    local words\n"
    "    case $cmd in\n"
    "    '') words=\"migrate seed submit status dead retry purge queues workers watch held"
    " orders order ops keys trace hash-key completion --config --dsn --redis --json --help\" ;;\n"
    "    migrate) words=\"up status --dir\" ;;\n"
    "    submit) if [ -z \"$sub\" ]; then words=\"$types --file\";"
    " else words=\"--delay-ms --run-at --max-attempts --job-id --idempotency-key --batch\";"
    " fi ;;\n"
    "    dead) case $sub in\n"
    "        ''|list) words=\"list show retry purge --type --since --limit\" ;;\n"
    "        retry) words=\"--all --type --since --limit\" ;;\n"
    "        purge) words=\"--yes\" ;;\n"
    "        esac ;;\n"
    "    purge) words=\"--yes\" ;;\n"
    "    watch) words=\"--count\" ;;\n"
    "    held) words=\"--min-age-s\" ;;\n"
    "    orders) words=\"--state --list --limit\" ;;\n"
    "    ops) if [ -z \"$sub\" ]; then words=tail; else words=\"--order --limit --follow\"; fi ;;\n"
    "    keys) case $sub in\n"
    "        '') words=\"add revoke list\" ;;\n"
    "        add) words=\"--scopes --print-only\" ;;\n"
    "        revoke) words=\"--force\" ;;\n"
    "        esac ;;\n"
    "    trace) if [ -z \"$sub\" ]; then words=\"status set reset\";"
    " elif [ \"$sub\" = set ]; then words=\"api worker broker ups db all off\"; fi ;;\n"
    "    completion) words=bash ;;\n"
    "    esac\n"
    "    COMPREPLY=($(compgen -W \"$words --json\" -- \"$cur\"))\n"
    "}\n"
    "complete -F _conveyorctl conveyorctl\n";

int ctl_completion(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "bash") != 0)
        return ctl_usage("completion: want 'completion bash'");
    fputs(script_head, stdout);
    fputs("    local types=\"", stdout);
    for (int i = 0; i < JT_N; i++)
        printf("%s%s", i ? " " : "", jobtype_at(i)->name);
    fputs("\"\n    local states=\"", stdout);
    for (int i = 0; i < OSTATE_N; i++)
        printf("%s%s", i ? " " : "", ostate_str((enum ostate)i));
    fputs("\"\n", stdout);
    fputs(script_body, stdout);
    return CTL_EXIT_OK;
}
