import os
y = (1e999 - 1e999, {1e999j - 1e999j})
await x
