package classify

import (
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

// benchRequests are requests of the kinds the gateway sees: short chat, a coding task, a
// math word problem, a multi-turn conversation with a system prompt, and a long document.
func benchRequests() []*models.Request {
	user := func(s string) models.Message { return models.Message{Role: "user", Content: s} }
	return []*models.Request{
		{Kind: models.KindChat, Messages: []models.Message{user("hi, how are you today?")}},
		{Kind: models.KindChat, Messages: []models.Message{user("Write a C++ program to find the nth Fibonacci number using recursion. " +
			"Then explain its time complexity step by step and suggest a faster algorithm.\n```cpp\nint fib(int n) { return n < 2 ? n : fib(n-1) + fib(n-2); }\n```")}},
		{Kind: models.KindChat, Messages: []models.Message{user("Some people got on a bus at the terminal. At the first bus stop, half of the people got down and 4 more people got in. " +
			"Then at the second bus stop, 6 people got down and 8 more got in. If there were a total of 25 people heading to the third stop, how many people got on the bus at the terminal?")}},
		{Kind: models.KindChat, Messages: []models.Message{
			{Role: "system", Content: "You are a helpful assistant. Answer concisely."},
			user("Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and must-see attractions."),
			{Role: "assistant", Content: strings.Repeat("Aloha! ", 200)},
			user("Rewrite your previous response. Start every sentence with the letter A."),
		}},
		{Kind: models.KindChat, Messages: []models.Message{user(strings.Repeat("The committee reviewed the quarterly figures in detail. ", 1200) +
			"\nSummarize the document above in exactly three bullet points.")}},
	}
}

func BenchmarkScore(b *testing.B) {
	m, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	reqs := benchRequests()
	names := []string{"short", "code", "math", "multi-turn", "long-64KiB"}
	for i, r := range reqs {
		b.Run(names[i], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Score(r)
			}
		})
	}
}
