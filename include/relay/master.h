/* master.h: placeholder. */
