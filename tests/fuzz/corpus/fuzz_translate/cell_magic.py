
  %%bash --out x
echo $x
