/* compatbuild smoke harness: dlopen(path, RTLD_NOW) each library, optionally call a symbol.
 *
 *   compatbuild-smoke [--preload LIB]... [--symbol NAME | --optional-symbol NAME] LIB...
 *
 * RTLD_NOW resolves every undefined symbol at load time, so a library that needs a newer
 * glibc fails here with the loader's own words, exactly as a host program would see it.
 * Each --preload (a stub of the host's API, or the host's real library) is loaded first
 * with RTLD_NOW | RTLD_GLOBAL, so its symbols are there for the libraries, as a host
 * program's own symbols are for a plugin it loads.
 * Exit status: 0 all loaded (and called); 2 usage; 3 dlopen failed; 4 symbol missing;
 * 5 a preload failed.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define USAGE "usage: %s [--preload LIB]... [--symbol NAME | --optional-symbol NAME] LIB...\n"

int main(int argc, char **argv)
{
    const char *symbol = NULL;
    int optional = 0, i = 1, failed = 0;

    /* Line-buffer stdout even into a pipe, so its lines and stderr's keep their order. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--symbol") == 0 && i + 1 < argc) {
            symbol = argv[++i];
        } else if (strcmp(argv[i], "--optional-symbol") == 0 && i + 1 < argc) {
            symbol = argv[++i];
            optional = 1;
        } else if (strcmp(argv[i], "--preload") == 0 && i + 1 < argc) {
            const char *preload = argv[++i];
            if (dlopen(preload, RTLD_NOW | RTLD_GLOBAL) == NULL) {
                fprintf(stderr, "smoke: preload %s: %s\n", preload, dlerror());
                return 5;
            }
            printf("smoke: preloaded %s\n", preload);
        } else {
            fprintf(stderr, USAGE, argv[0]);
            return 2;
        }
    }
    if (i >= argc) {
        fprintf(stderr, USAGE, argv[0]);
        return 2;
    }
    for (; i < argc; i++) {
        void *handle = dlopen(argv[i], RTLD_NOW);
        if (handle == NULL) {
            fprintf(stderr, "smoke: dlopen %s: %s\n", argv[i], dlerror());
            failed = 3;
            continue;
        }
        printf("smoke: loaded %s\n", argv[i]);
        if (symbol != NULL) {
            void (*fn)(void);
            dlerror();
            *(void **)(&fn) = dlsym(handle, symbol);
            if (fn == NULL) {
                if (optional) {
                    printf("smoke: %s has no symbol %s; loaded only\n", argv[i], symbol);
                } else {
                    fprintf(stderr, "smoke: dlsym %s in %s: %s\n", symbol, argv[i], dlerror());
                    if (failed == 0)
                        failed = 4;
                }
            } else {
                printf("smoke: calling %s\n", symbol);
                fflush(stdout);
                fn();
                fflush(stdout);
                printf("smoke: %s returned\n", symbol);
            }
        }
        fflush(stdout);
    }
    return failed;
}
