/* The seqeig subcommands (app/main.c dispatches).  Each returns the exit
 * code: 0 ok, 2 usage / config / input-file error, 1 runtime failure. */
#ifndef SEQEIG_CLI_H
#define SEQEIG_CLI_H

int cmd_train(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_spectra(int argc, char **argv);

#endif
