/* A stand-in for rpm(8) in a FROM-scratch image: answers exactly the three queries
 * tasks.rpms.installed_in_base makes, with lines shaped like Fedora 20's rpm 4.11 output,
 * and fails loudly on anything else. Built static, so the image needs nothing but it. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
#ifdef FAIL
    fputs("error: rpmdb: BDB0113 Thread/process 1/0 failed: db is corrupt\n", stderr);
    return 1;
#endif
    if (argc == 3 && !strcmp(argv[1], "-qa") && !strcmp(argv[2], "--provides")) {
        fputs("bash = 4.2.47-2.fc20\nbash(x86-64) = 4.2.47-2.fc20\n/bin/sh\n"
              "glibc = 2.18-11.fc20\nlibc.so.6()(64bit)\nconfig(setup) = 2.8.71-2.fc20\n",
              stdout);
        fputs("warning: Generating 12 missing index(es), please wait...\n", stderr);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "-qal")) {
        fputs("/usr/bin/bash\n/usr/sbin/ldconfig\n(contains no files)\n", stdout);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "-qa") && !strcmp(argv[2], "--qf")
        && strstr(argv[3], "%{NAME}") && strstr(argv[3], "%{VERSION}-%{RELEASE}")) {
        fputs("bash = 4.2.47-2.fc20\nglibc = 2.18-11.fc20\nmake = 1:3.82-19.fc20\n", stdout);
        return 0;
    }
    fprintf(stderr, "fake rpm: unexpected arguments (%d)\n", argc);
    return 2;
}
