/* C code compiled by the cc crate with the image's gcc, against the old glibc's headers. */
#include <stdio.h>
#include <string.h>

int greet_format(char *out, unsigned long size, const char *who)
{
    return snprintf(out, size, "with_cc greets %s (%lu chars)", who, (unsigned long)strlen(who));
}
