!ls -l $HOME {x}
files = !ls
out, = !echo hi
