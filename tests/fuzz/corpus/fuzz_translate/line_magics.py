%cd /tmp
%env A=B
x = %env A
  %matplotlib inline
%pip install -q x
