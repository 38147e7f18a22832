//! BTF: the type information clang emits into `.BTF` and `.BTF.ext`.
