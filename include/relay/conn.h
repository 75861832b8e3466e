/* conn.h: placeholder. */
