/* net.h: placeholder. */
