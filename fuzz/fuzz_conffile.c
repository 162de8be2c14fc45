/* fuzz_conffile.c — libFuzzer target for the config file reader (src/app/conffile.c): any
 * bytes as a file must give errors, never a crash, and leave a config that is safe to free. */
#include <stdio.h>
#include <string.h>

#include "app/conffile.h"

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n);

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n)
{
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    rc_conffile cf;
    rc_config cfg;
    rc_conffile_init(&cf);
    rc_config_init(&cfg);
    rc_conffile_load_text(&cf, "fuzz.conf", (const char *)d, n, &cfg, devnull);
    rc_conffile_release(&cf);
    return 0;
}
