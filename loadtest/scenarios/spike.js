// prism k6: the spike scenario (load shape in lib/stages.js; the journey in lib/journey.js).
//
//   BASE_URL=http://127.0.0.1:8080 TOKEN=$(cat prism-data/dev-token) k6 run loadtest/scenarios/spike.js
import { batchJourney } from '../lib/journey.js';
import { healthCheck } from '../lib/api.js';
import { thresholds } from '../lib/config.js';
import { spike } from '../lib/stages.js';
import { summary } from '../lib/summary.js';

export const options = {
  scenarios: { spike: { ...spike, exec: 'run' } },
  thresholds: thresholds({ failedRate: 0.01, abortOnFail: false }),
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
};

export function setup() {
  healthCheck();
}

export function run() {
  batchJourney();
}

export const handleSummary = summary('spike');
