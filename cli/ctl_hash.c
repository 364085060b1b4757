/* ctl_hash.c - conveyorctl hash-key: the SHA-256 of an API key, so that the
 * configuration holds only the hash (api keys are name:sha256hex:types). */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

#define KEY_MAX_BYTES 4096

int ctl_hash_key(int argc, char **argv)
{
    char line[KEY_MAX_BYTES + 2];
    const char *key;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (argc != 2)
        return ctl_usage("hash-key: give exactly one KEY (or - to read it from stdin)");
    key = argv[1];
    if (strcmp(key, "-") == 0) {
        /* from stdin, so the key stays out of the shell history and ps */
        if (!fgets(line, sizeof(line), stdin))
            return ctl_usage("hash-key: no key on stdin");
        size_t n = strlen(line);
        if (n > KEY_MAX_BYTES)
            return ctl_usage("hash-key: key longer than %d bytes", KEY_MAX_BYTES);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        key = line;
    }
    if (*key == '\0')
        return ctl_usage("hash-key: the key is empty");
    if (!EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return ctl_fail("hash-key: SHA-256 failed");
    for (unsigned int i = 0; i < mdlen; i++)
        printf("%02x", md[i]);
    putchar('\n');
    return CTL_EXIT_OK;
}
