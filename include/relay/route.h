/* route.h: placeholder. */
