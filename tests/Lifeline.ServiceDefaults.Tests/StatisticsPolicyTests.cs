using Lifeline.ServiceDefaults.Postgres;

namespace Lifeline.ServiceDefaults.Tests;

/// <summary>
/// When the statistics keeper analyzes a table (StatisticsPolicy.NeedsAnalyze): at once when it was never analyzed or
/// its size halved or doubled; a table that only churns (a queue's: every row changes, the shape stays) at most once a
/// churn interval — each ANALYZE makes every connection rebuild the table's description and re-plan its statements,
/// and every five seconds that cost the dispatch stream a quarter of its throughput.
/// </summary>
public sealed class StatisticsPolicyTests
{
    private static readonly StatisticsPolicy Policy = new(["tasks"], TimeSpan.FromSeconds(5));

    [Theory]
    [InlineData(0, 0, false)] // empty: nothing to describe
    [InlineData(1, 1, true)] // the first rows
    [InlineData(200, 200, true)]
    public void A_table_never_analyzed_is_analyzed_as_soon_as_it_holds_rows(long changed, long live, bool expected) =>
        Assert.Equal(expected, Policy.NeedsAnalyze(neverAnalyzed: true, changed, live, relTuples: -1, TimeSpan.Zero));

    [Theory]
    [InlineData(300_000, 400_000, 100_000, 1)] // grew fourfold a second after its last analyze
    [InlineData(900_000, 100_000, 1_000_000, 1)] // shrank to a tenth
    [InlineData(3_000, 3_200, 200, 0)] // 200 → 3,200 rows
    public void A_table_that_halved_or_doubled_is_analyzed_at_once(long changed, long live, double relTuples, double secondsSince) =>
        Assert.True(Policy.NeedsAnalyze(false, changed, live, relTuples, TimeSpan.FromSeconds(secondsSince)));

    [Fact]
    public void A_table_that_only_churns_is_analyzed_once_its_last_analyze_is_a_churn_interval_old()
    {
        // 370,000 rows, every one of them changed twice since, the size the same.
        Assert.False(Policy.NeedsAnalyze(false, 740_000, 370_000, 365_000, TimeSpan.FromSeconds(5)));
        Assert.False(Policy.NeedsAnalyze(false, 740_000, 370_000, 365_000, TimeSpan.FromSeconds(59)));
        Assert.True(Policy.NeedsAnalyze(false, 740_000, 370_000, 365_000, TimeSpan.FromSeconds(60)));
        Assert.True((Policy with { ChurnInterval = TimeSpan.FromSeconds(10) }).NeedsAnalyze(false, 740_000, 370_000, 365_000, TimeSpan.FromSeconds(10)));
    }

    [Theory]
    [InlineData(999, 5_000, 5_000)] // under the threshold
    [InlineData(30_000, 370_000, 370_000)] // under 10 % of the live rows
    public void Too_few_changes_never_need_an_analyze_however_old_the_last(long changed, long live, double relTuples) =>
        Assert.False(Policy.NeedsAnalyze(false, changed, live, relTuples, TimeSpan.FromHours(1)));
}
