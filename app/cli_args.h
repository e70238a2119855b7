/* Small helpers of the subcommands' flag parsing. */
#ifndef SEQEIG_CLI_ARGS_H
#define SEQEIG_CLI_ARGS_H

/* Parse a whole decimal integer in [lo, hi]; 0 ok, -1 otherwise. */
int cli_parse_int(const char *s, long long lo, long long hi, long long *out);

#endif
