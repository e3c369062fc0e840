-- 0012: a crawl's link pages (indexes, tables of contents: mostly links) are followed but not indexed, and do not
-- count against the crawl's max_pages (crawler.link_page_share, crawler.index_link_pages).
ALTER TABLE job_items ADD COLUMN link_page boolean NOT NULL DEFAULT false;
