/* fuzz_env.h - what the harnesses share: a clean environment. */
#ifndef CV_FUZZ_ENV_H
#define CV_FUZZ_ENV_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Unset every CONVEYOR_* variable: the environment of whoever runs the fuzzer
 * (a sourced var/stack.env, say) must not leak into cfg_load. */
static inline void fuzz_clear_env(void)
{
    for (char **e = environ; *e;) {
        if (strncmp(*e, "CONVEYOR_", 9) == 0) {
            char name[128];
            snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
            unsetenv(name);       /* shifts the array: look at *e again */
        } else {
            e++;
        }
    }
}

#endif
