/**
 * Operations: one CloudWatch dashboard and the alarms that page someone.
 *
 * Dashboard rows: per queue (visible, in flight, DLQ depth, age of oldest message); per service
 * (running tasks, CPU, memory); the API (ALB requests, 4xx/5xx, target latency); alarm status.
 *
 * Alarms, all to one SNS topic (optionally with an email subscription):
 * - each DLQ holds any message: a poison message or a bug; never normal;
 * - each queue's oldest message is older than its threshold: workers are down or far behind;
 * - the API's 5xx share of requests exceeds 5% for 3 of 5 minutes;
 * - each queue worker's failure rate (messages retried or dead-lettered, of all it finished)
 *   exceeds 5% for 3 of 5 minutes;
 * - prism-resize's p95 render time (handling time of successful messages) exceeds 60 s for 3 of
 *   5 minutes.
 *
 * The last two, and the "application" row, read the binaries' own metrics, which they write as
 * CloudWatch embedded metric format (EMF) lines to stdout (`PRISM__METRICS__EMF=true`): same
 * names as on `/metrics`, dimensions from a closed key set, plus a per-worker roll-up
 * (dimension set `[worker]`) that the failure rate divides by. Row per worker: throughput by
 * outcome, handling-time percentiles, errors by code (a SEARCH over the `error_code` dimension).
 */
import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subs from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import type { QueueWithDlq } from './queue-with-dlq';

/** A queue to chart and alarm on. */
export interface WatchedQueue {
  /** Short label: `resize`, `archive`, `metadata`. */
  readonly name: string;
  readonly work: QueueWithDlq;
  /** Alarm when the oldest message is older than this. */
  readonly maxAge: Duration;
}

/**
 * Metric names the binaries emit (defined once in the Rust telemetry module; a jest test reads
 * them from there so a rename cannot leave these behind).
 */
export const APP_METRICS = {
  received: 'prism_messages_received_total',
  processed: 'prism_messages_processed_total',
  duration: 'prism_message_processing_duration_seconds',
  errors: 'prism_errors_total',
} as const;

/** Outcomes of `prism_messages_processed_total` that count as failures (the rest: success, duplicate, abandoned). */
export const FAILURE_OUTCOMES = ['retry', 'dead_letter'] as const;

/** A queue worker whose application metrics to chart and alarm on. */
export interface WatchedWorker {
  /** The `worker` label value: `resize`, `metadata`, `archiver`. */
  readonly name: string;
  /**
   * Alarm when the p95 handling time of successful messages exceeds this (prism-resize: the render
   * time). @default - no latency alarm
   */
  readonly maxP95?: Duration;
}

/** A service to chart. */
export interface WatchedService {
  readonly name: string;
  readonly service: ecs.FargateService;
  readonly runningTasks: cloudwatch.Metric;
}

export interface OperationsDashboardProps {
  readonly queues: WatchedQueue[];
  readonly services: WatchedService[];
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  readonly targetGroup: elbv2.ApplicationTargetGroup;
  /** Key for the alarm topic; its policy must admit cloudwatch.amazonaws.com. */
  readonly alarmTopicKey: kms.IKey;
  /** Subscribe this address to the alarm topic. */
  readonly alarmEmail?: string;
  /** API 5xx percentage that alarms. @default 5 */
  readonly api5xxPercentThreshold?: number;
  /** Queue workers' application metrics (EMF). @default - none */
  readonly workers?: WatchedWorker[];
  /** CloudWatch namespace of the binaries' EMF metrics. @default 'prism' */
  readonly metricsNamespace?: string;
  /** Failure percentage (retried + dead-lettered of all finished) that alarms. @default 5 */
  readonly failurePercentThreshold?: number;
  /** Deployment stage, shown in the dashboard title. @default '' */
  readonly stage?: string;
}

/** Dashboard, alarms and the alarm topic. */
export class OperationsDashboard extends Construct {
  public readonly dashboard: cloudwatch.Dashboard;
  public readonly alarmTopic: sns.Topic;
  public readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: OperationsDashboardProps) {
    super(scope, id);
    const minute = Duration.minutes(1);

    this.alarmTopic = new sns.Topic(this, 'AlarmTopic', { masterKey: props.alarmTopicKey, enforceSSL: true });
    if (props.alarmEmail) {
      this.alarmTopic.addSubscription(new subs.EmailSubscription(props.alarmEmail));
    }
    const notify = new actions.SnsAction(this.alarmTopic);
    const alarm = (alarmId: string, alarmProps: cloudwatch.AlarmProps): cloudwatch.Alarm => {
      const a = new cloudwatch.Alarm(this, alarmId, alarmProps);
      a.addAlarmAction(notify);
      a.addOkAction(notify);
      this.alarms.push(a);
      return a;
    };

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(3),
      periodOverride: cloudwatch.PeriodOverride.AUTO,
    });

    // Queues.
    const queueWidgets: cloudwatch.IWidget[] = [];
    for (const q of props.queues) {
      const visible = q.work.queue.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum', label: 'visible' });
      const inFlight = q.work.queue.metricApproximateNumberOfMessagesNotVisible({ period: minute, statistic: 'Maximum', label: 'in flight' });
      const dlq = q.work.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum', label: 'DLQ depth' });
      const age = q.work.queue.metricApproximateAgeOfOldestMessage({ period: minute, statistic: 'Maximum', label: 'age of oldest (s)' });
      queueWidgets.push(
        new cloudwatch.GraphWidget({
          title: `${q.name} queue`,
          left: [visible, inFlight, dlq],
          right: [age],
          leftYAxis: { min: 0, label: 'messages', showUnits: false },
          rightYAxis: { min: 0, label: 'seconds', showUnits: false },
          width: 8,
        }),
      );
      alarm(`${pascal(q.name)}DlqNotEmpty`, {
        alarmDescription: `prism ${q.name}: the dead-letter queue holds messages (poison messages or a bug). Inspect, fix, then redrive.`,
        metric: dlq,
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        // SQS stops publishing for queues idle for hours: no data means no messages.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      alarm(`${pascal(q.name)}OldestMessageAge`, {
        alarmDescription: `prism ${q.name}: the oldest message has waited over ${q.maxAge.toSeconds()} s; workers are down or far behind.`,
        metric: age,
        threshold: q.maxAge.toSeconds(),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        datapointsToAlarm: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    // Services.
    const serviceWidgets: cloudwatch.IWidget[] = [];
    for (const s of props.services) {
      serviceWidgets.push(
        new cloudwatch.GraphWidget({
          title: `${s.name} service`,
          left: [s.runningTasks.with({ label: 'running tasks' })],
          right: [
            s.service.metricCpuUtilization({ period: minute, label: 'CPU %' }),
            s.service.metricMemoryUtilization({ period: minute, label: 'memory %' }),
          ],
          leftYAxis: { min: 0, label: 'tasks', showUnits: false },
          rightYAxis: { min: 0, max: 100, label: '%', showUnits: false },
          width: 6,
        }),
      );
    }

    // API.
    const m = props.loadBalancer.metrics;
    const requests = m.requestCount({ period: minute, statistic: 'Sum', label: 'requests' });
    const target4xx = m.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_4XX_COUNT, { period: minute, statistic: 'Sum', label: 'target 4xx' });
    const target5xx = m.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, { period: minute, statistic: 'Sum', label: 'target 5xx' });
    const elb5xx = m.httpCodeElb(elbv2.HttpCodeElb.ELB_5XX_COUNT, { period: minute, statistic: 'Sum', label: 'ALB 5xx' });
    const latency = (stat: string): cloudwatch.IMetric =>
      props.targetGroup.metrics.targetResponseTime({ period: minute, statistic: stat, label: `target latency ${stat}` });
    // 5xx counts are absent (not zero) in minutes without errors, hence FILL.
    const errorRate = new cloudwatch.MathExpression({
      label: '5xx %',
      expression: 'IF(requests > 0, 100 * (FILL(t5xx, 0) + FILL(e5xx, 0)) / requests, 0)',
      usingMetrics: { requests, t5xx: target5xx, e5xx: elb5xx },
      period: minute,
    });
    const api5xx = alarm('Api5xxRate', {
      alarmDescription: 'prism-api: more than 5% of requests answered 5xx (by the tasks or the load balancer).',
      metric: errorRate,
      threshold: props.api5xxPercentThreshold ?? 5,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const apiWidgets: cloudwatch.IWidget[] = [
      new cloudwatch.GraphWidget({ title: 'API requests', left: [requests], width: 6 }),
      new cloudwatch.GraphWidget({ title: 'API 4xx / 5xx', left: [target4xx, target5xx, elb5xx], right: [errorRate], width: 6 }),
      new cloudwatch.GraphWidget({ title: 'API target latency (s)', left: [latency('p50'), latency('p95'), latency('p99')], width: 6 }),
      new cloudwatch.AlarmWidget({ title: 'API 5xx alarm', alarm: api5xx, width: 6 }),
    ];

    // Application metrics (EMF), per queue worker.
    const namespace = props.metricsNamespace ?? 'prism';
    const app = (metricName: string, dimensionsMap: Record<string, string>, statistic: string, label: string): cloudwatch.Metric =>
      new cloudwatch.Metric({ namespace, metricName, dimensionsMap, statistic, period: minute, label });
    const appWidgets: cloudwatch.IWidget[] = [];
    for (const w of props.workers ?? []) {
      const total = app(APP_METRICS.processed, { worker: w.name }, 'Sum', 'finished');
      const byOutcome = (outcome: string) => app(APP_METRICS.processed, { outcome, worker: w.name }, 'Sum', outcome);
      const failed: Record<string, cloudwatch.IMetric> = {};
      FAILURE_OUTCOMES.forEach((o, i) => {
        failed[`f${i}`] = byOutcome(o);
      });
      const failureRate = new cloudwatch.MathExpression({
        label: 'failed %',
        // Absent, not zero, in minutes without failures (EMF writes a series once it exists,
        // but a restarted task starts without it), hence FILL.
        expression: `IF(total > 0, 100 * (${Object.keys(failed).map((k) => `FILL(${k}, 0)`).join(' + ')}) / total, 0)`,
        usingMetrics: { total, ...failed },
        period: minute,
      });
      alarm(`${pascal(w.name)}FailureRate`, {
        alarmDescription: `prism ${w.name}: more than ${props.failurePercentThreshold ?? 5}% of finished messages were retried or dead-lettered (see the errors-by-code graph).`,
        metric: failureRate,
        threshold: props.failurePercentThreshold ?? 5,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        datapointsToAlarm: 3,
        // A worker scaled to zero writes nothing.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      const duration = (stat: string) => app(APP_METRICS.duration, { outcome: 'success', worker: w.name }, stat, `handling ${stat} (s)`);
      if (w.maxP95) {
        alarm(`${pascal(w.name)}P95Duration`, {
          alarmDescription: `prism ${w.name}: p95 handling time of successful messages over ${w.maxP95.toSeconds()} s (render time for resize).`,
          metric: duration('p95'),
          threshold: w.maxP95.toSeconds(),
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
          evaluationPeriods: 5,
          datapointsToAlarm: 3,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        });
      }
      const errorsByCode = new cloudwatch.MathExpression({
        label: '',
        expression: `SEARCH('{${namespace},error_code,stage,worker} MetricName="${APP_METRICS.errors}" worker="${w.name}"', 'Sum', 60)`,
        usingMetrics: {},
        period: minute,
      });
      appWidgets.push(
        new cloudwatch.GraphWidget({
          title: `${w.name}: messages per minute`,
          left: [byOutcome('success'), byOutcome('duplicate'), ...FAILURE_OUTCOMES.map(byOutcome)],
          right: [failureRate],
          leftYAxis: { min: 0, showUnits: false },
          rightYAxis: { min: 0, label: '%', showUnits: false },
          width: 8,
        }),
        new cloudwatch.GraphWidget({
          title: `${w.name}: handling time (s)`,
          left: [duration('p50'), duration('p95'), duration('p99')],
          leftYAxis: { min: 0, showUnits: false },
          width: 8,
        }),
        new cloudwatch.GraphWidget({
          title: `${w.name}: errors by code`,
          left: [errorsByCode],
          leftYAxis: { min: 0, showUnits: false },
          width: 8,
        }),
      );
    }

    const region = Stack.of(this).region;
    const title = props.stage ? `prism ${props.stage} (${region})` : `prism (${region})`;
    this.dashboard.addWidgets(new cloudwatch.TextWidget({ markdown: `# ${title}\nQueues, workers, API, application metrics (namespace \`${namespace}\`). Alarms notify the alarm topic.`, width: 24, height: 2 }));
    this.dashboard.addWidgets(...queueWidgets);
    this.dashboard.addWidgets(...serviceWidgets);
    this.dashboard.addWidgets(...apiWidgets);
    if (appWidgets.length > 0) this.dashboard.addWidgets(...appWidgets);
    this.dashboard.addWidgets(new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24 }));
  }
}

function pascal(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
