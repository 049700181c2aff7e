/* Pacing of periodic work (see pace.h). */
#include "util/pace.h"

double pace_interval(double took, double factor, double min, double max)
{
    double every = took > 0 ? took * factor : 0;
    return every < min ? min : every > max ? max : every;
}
