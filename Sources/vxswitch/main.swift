import Dataplane
print("vxswitch")
