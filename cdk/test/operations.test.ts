/**
 * Operations: the dashboard and the alarms (DLQ not empty, oldest age, API 5xx rate) and where
 * they notify.
 */
import { Match } from 'aws-cdk-lib/assertions';
import { synthPrism, Synthesized } from './helpers';

let s: Synthesized;
beforeAll(() => {
  s = synthPrism({ alarmEmail: 'oncall@example.com' });
});

const alarm = (prefix: string) => {
  const entry = Object.entries(s.compute_.findResources('AWS::CloudWatch::Alarm')).find(([id]) => id.startsWith(`Operations${prefix}`));
  if (!entry) throw new Error(`no alarm ${prefix}`);
  return entry[1].Properties;
};

/** The single metric an alarm watches, whether rendered inline or as a one-entry Metrics array. */
const metricOf = (a: Record<string, any>): Record<string, any> =>
  a.MetricName ? { MetricName: a.MetricName, Namespace: a.Namespace, Dimensions: a.Dimensions } : a.Metrics[0].MetricStat.Metric;

test('alarm topic: encrypted with the topic key, TLS only, email subscription from context', () => {
  s.compute_.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.objectLike({ 'Fn::ImportValue': Match.stringLikeRegexp('TopicKey') }) });
  s.compute_.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'oncall@example.com' });
  s.compute_.hasResourceProperties('AWS::SNS::TopicPolicy', {
    PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
  });
});

test('no email subscription unless configured', () => {
  synthPrism().compute_.resourceCountIs('AWS::SNS::Subscription', 0);
});

test.each([
  ['Resize', 'ResizeQueueDeadLetterQueue'],
  ['Archive', 'ArchiveQueueDeadLetterQueue'],
  ['Metadata', 'MetadataQueueDeadLetterQueue'],
])('%s DLQ not empty: any visible message alarms at once', (prefix, dlq) => {
  const a = alarm(`${prefix}DlqNotEmpty`);
  expect(metricOf(a)).toEqual(expect.objectContaining({ MetricName: 'ApproximateNumberOfMessagesVisible', Namespace: 'AWS/SQS' }));
  expect(a).toEqual(
    expect.objectContaining({
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: 1,
      TreatMissingData: 'notBreaching',
    }),
  );
  expect(JSON.stringify(metricOf(a).Dimensions)).toContain(dlq);
  expect(JSON.stringify(a.AlarmActions)).toContain('OperationsAlarmTopic');
});

test.each([
  ['Resize', 600],
  ['Archive', 900],
  ['Metadata', 300],
])('%s oldest message age over %d s for 5 minutes alarms', (prefix, threshold) => {
  const a = alarm(`${prefix}OldestMessageAge`);
  expect(metricOf(a)).toEqual(expect.objectContaining({ MetricName: 'ApproximateAgeOfOldestMessage', Namespace: 'AWS/SQS' }));
  expect(JSON.stringify(metricOf(a).Dimensions)).toContain(`${prefix}Queue`);
  expect(a).toEqual(
    expect.objectContaining({
      Threshold: threshold,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 5,
      DatapointsToAlarm: 5,
    }),
  );
});

test('API 5xx rate over 5% alarms (target and load balancer 5xx over requests)', () => {
  const a = alarm('Api5xxRate');
  expect(a.Threshold).toBe(5);
  expect(a.ComparisonOperator).toBe('GreaterThanThreshold');
  const expr = (a.Metrics as Record<string, any>[]).find((m) => m.Expression);
  expect(expr?.Expression).toBe('IF(requests > 0, 100 * (FILL(t5xx, 0) + FILL(e5xx, 0)) / requests, 0)');
  const names = (a.Metrics as Record<string, any>[]).filter((m) => m.MetricStat).map((m) => m.MetricStat.Metric.MetricName).sort();
  expect(names).toEqual(['HTTPCode_ELB_5XX_Count', 'HTTPCode_Target_5XX_Count', 'RequestCount']);
});

test('every operations alarm notifies the alarm topic on ALARM and OK', () => {
  const alarms = Object.entries(s.compute_.findResources('AWS::CloudWatch::Alarm')).filter(([id]) => id.startsWith('Operations'));
  // 3 DLQ + 3 oldest-age + API 5xx + 3 worker failure rates + resize render time.
  expect(alarms).toHaveLength(11);
  for (const [, a] of alarms) {
    expect(JSON.stringify(a.Properties.AlarmActions)).toContain('OperationsAlarmTopic');
    expect(JSON.stringify(a.Properties.OKActions)).toContain('OperationsAlarmTopic');
  }
});

test('dashboard charts every queue, service and the API', () => {
  s.compute_.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  const body = JSON.stringify(Object.values(s.compute_.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody);
  for (const needle of [
    'resize queue',
    'archive queue',
    'metadata queue',
    'ApproximateNumberOfMessagesVisible',
    'ApproximateNumberOfMessagesNotVisible',
    'ApproximateAgeOfOldestMessage',
    'DLQ depth',
    'api service',
    'resize service',
    'archiver service',
    'metadata service',
    'RunningTaskCount',
    'CPUUtilization',
    'MemoryUtilization',
    'RequestCount',
    'HTTPCode_Target_4XX_Count',
    'HTTPCode_Target_5XX_Count',
    'TargetResponseTime',
  ]) {
    expect(body).toContain(needle);
  }
});
