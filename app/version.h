#ifndef SEQEIG_VERSION_H
#define SEQEIG_VERSION_H
#define SEQEIG_VERSION "0.1.0"
#endif
