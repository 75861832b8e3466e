/* channel.h: placeholder. */
