#include "CPacket.h"
