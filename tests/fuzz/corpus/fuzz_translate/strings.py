s = '''
!not a command
%not a magic
'''
t = ('a'
     % 3)
u = "!" + '%d' % 1  # !comment
v = 'a\
!b'
