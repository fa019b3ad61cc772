import Dataplane
